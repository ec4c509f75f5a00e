"""Deep Compression (Han, Mao, Dally; arXiv:1510.00149) as used in the SqueezeNet paper:
magnitude pruning with fine-tuning, k-means weight sharing with centroid fine-tuning,
sparse storage with relative indices, and Huffman coding, in a versioned .sqz file."""
