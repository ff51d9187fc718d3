"""Training: the heatmap decoder (pure torch) and the Local Background fine-tune."""
