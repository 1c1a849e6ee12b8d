"""Reading and checking files: DL1 inputs, the event DL2 file (no TensorFlow here)."""
