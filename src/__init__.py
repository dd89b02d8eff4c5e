"""UvA Deep Learning Assignment 1 (Fall 2019) on CIFAR-10 as reproducible software."""
