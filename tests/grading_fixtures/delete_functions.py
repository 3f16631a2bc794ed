# base: source, at: before test_gd_fixed_visible
del gradient_descent
