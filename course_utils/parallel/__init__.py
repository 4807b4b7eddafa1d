"""Chapter 11: training beyond one device.

Memory accounting (parameters, gradients, optimizer states, activations; ZeRO stages), mixed precision,
activation checkpointing, gradient accumulation, a launcher for torch.distributed worker processes (gloo on CPU,
NCCL on GPUs) that always tears its process group down, data parallelism (DDP) and sharding (FSDP2), Megatron-style
tensor-parallel linear layers, the pipeline bubble, and a planner that picks data/tensor/pipeline/context parallel
sizes that fit a model in GPU memory.
"""
