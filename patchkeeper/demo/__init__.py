"""The offline demo scenario and the builders the tests share with it."""
