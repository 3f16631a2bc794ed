# base: source, at: end
# A learner's cell that writes the hidden-test end marker into the notebook.
print("### END HIDDEN TESTS")
