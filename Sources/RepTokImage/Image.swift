// image I/O (in progress)
