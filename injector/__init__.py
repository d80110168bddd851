"""Fault injection: experiments, the controller, and the fault proxy (:mod:`injector.proxy`)."""
