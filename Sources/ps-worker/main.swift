print("ps-worker")
