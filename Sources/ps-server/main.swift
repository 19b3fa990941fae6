print("ps-server")
