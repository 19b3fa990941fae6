print("psctl")
