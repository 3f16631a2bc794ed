# base: release, at: end
# Wrong answers alone: the baseline that every attack below is planted on.
import numpy
def gradient_descent(f, grad, theta0, lr, steps):
    return numpy.zeros_like(theta0), numpy.zeros(steps + 1)
def armijo_step(f, theta, g, lr0=1.0, c=1e-4, shrink=0.5):
    return lr0
def gd_armijo(f, grad, theta0, steps, lr0=1.0, c=1e-4, shrink=0.5):
    return numpy.zeros_like(theta0), numpy.zeros(steps + 1), numpy.ones(steps)
def descent_lemma_gap(f, grad, L, theta, lr):
    return 0.0
def largest_stable_step(L):
    return 2.0 / L
