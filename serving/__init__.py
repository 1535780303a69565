"""yujing: serving."""
