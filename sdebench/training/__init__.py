"""Training: the image U-Net (denoising score matching), the feature classifier of the image metrics,
learned MLP scores for the analytic targets and consistency distillation. Everything here fits networks;
the problems load what it writes (sdebench.problems.checkpoint) and the metrics use it, never the reverse.
"""
