"""Explanation methods: gradient methods on the input, CAM methods on a layer."""
