"""DNT: a Deeply Normalized Transformer trainable with momentum SGDW (arXiv 2507.17501)."""
