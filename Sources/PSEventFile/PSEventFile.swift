// TensorBoard event files.
