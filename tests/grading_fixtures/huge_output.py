# base: source, at: start
import sys
print("x" * 20_000_000)
for _ in range(200_000):
    sys.stdout.write("line of spam\n")
