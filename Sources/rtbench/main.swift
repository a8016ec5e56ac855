print("rtbench")
