"""Preflight: what a fresh project and a secure-by-default organization would refuse, checked before `up`."""
