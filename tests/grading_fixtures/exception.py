# base: source, at: start
raise RuntimeError("a learner's exception before anything is defined")
