"""Reading and checking what users give gpuplan: their files, configs and catalog entries."""
