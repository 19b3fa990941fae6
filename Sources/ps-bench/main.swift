print("ps-bench")
