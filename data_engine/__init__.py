"""Offline data engine: sources -> Show-o transform -> recaption -> image codes -> WebDataset shards."""
