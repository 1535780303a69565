"""yujing: features."""
