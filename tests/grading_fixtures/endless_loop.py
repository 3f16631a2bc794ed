# base: source, at: start
while True:
    pass
