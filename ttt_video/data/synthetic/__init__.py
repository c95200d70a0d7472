"""Synthetic video sets made from real digits: Moving-MNIST-style sequences and long-range recall."""
