// training data (in progress)
