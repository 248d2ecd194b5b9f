"""Guest images: recipes, kernels, initramfs, building and the cache."""
