"""Behaviour predictions over users' histories: the next page a visitor is likely to view
(`next_page`), the probability that a live session reaches a goal (`propensity`), and an honest
time-split evaluation of both against their baselines (`evaluate`)."""
