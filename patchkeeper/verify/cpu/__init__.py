"""The boot tier on CPU: real SGLang, a tiny local model, no GPU.

`env.ensure_boot_env` builds the heavy venv (sglang --no-deps, torch, the non-CUDA
runtime deps); `tiny_model` runs inside it to write a random model with an MTP layer;
`sgl_kernel_stub` stands in for the CUDA-only kernel package; `env.launch_command`
gives the argv and environment that serve it with NEXTN speculative decoding.
"""
