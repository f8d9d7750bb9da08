"""Training scripts for keras-googlenet: `python -m training.cifar`."""
