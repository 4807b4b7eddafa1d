"""Chapter 05: RLHF from scratch: losses, preferences, reward model, PPO, DPO, GRPO."""
