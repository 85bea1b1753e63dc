"""Residue constants, rigid-body maths (rotations, quaternions, frames) and protein I/O."""
