"""ICT's Config. Defaults are the paper's headline computation (ict.md §4, §7): every per-path ICT
decomposition matrix of rank n = 9, float64; presets shrink n."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.ict.paths import dense_entries
from components.ict.stream import estimated_stream_bytes

Mode = Literal["path_mats", "projectors", "isotypic", "end_basis", "algo4_layer"]
Layout = Literal["spherical", "cartesian", "dense"]


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(9, ge=1, le=10)  # tensor rank: the paper times n = 6..9 (9: 4 min 32 s on 28 cores)
    mode: Mode = "projectors"  # Algorithm 1's product: every per-path decomposition matrix D_p = P_p P_p^T
    layout: Layout = "spherical"  # D_p block-diagonal by total M, rank-1 blocks: 1.5e10 entries at n=9, not 1.2e12
    dtype: Literal["float64", "float32"] = "float64"  # fp32 loses orthonormality (1.6e-5 at n = 8, ict.md §3.7)
    cg_source: Literal["e3nn", "sympy"] = "e3nn"  # the official code's CG; sympy: exact CS values, e3nn's basis
    check_ranks: int = Field(5, ge=0, le=5)  # ict.md §6: the seven identities for n = 1..5 (naive, dense)
    orthogonality: bool = True  # exact max|Q^T Q - I| at rank n (spherical M-blocks: square, T(n, M) wide)
    write: bool = False  # stream the matrices into run_dir shards with sha256 (n = 9 spherical would be 118 GB)
    max_write_gb: float = Field(2.0, gt=0)  # a write estimated above this is refused before any compute
    panel_entries: int = Field(2**18, ge=1024)  # entries materialised at once: 2 MB of fp64, fits L2
    chunk_entries: int = Field(2**25, ge=1024)  # final path matrices alive at once (256 MB fp64)
    layer_batch: int = Field(8, ge=1)  # algo4_layer: tensors per forward pass
    timings: bool = True  # wall seconds and peak RSS in metrics (not bit-reproducible; the test preset drops them)

    @model_validator(mode="after")
    def _feasible(self) -> Config:
        if self.mode == "algo4_layer" and self.n > 8:
            raise ValueError(
                f"n: algo4_layer keeps the dense 3^n x 3^n change of basis; n={self.n} needs "
                f"{8 * 9**self.n / 1e9:.1f} GB (use n <= 8)"
            )
        if self.mode == "projectors" and self.layout == "dense" and self.n > 8:
            raise ValueError(
                f"layout: dense projectors at n={self.n} are {dense_entries(self.n):.2g} entries "
                "(hours on a CPU); use layout=spherical or cartesian"
            )
        if self.write and self.mode in ("projectors", "isotypic"):
            size = estimated_stream_bytes(self.n, self.layout, self.mode)
            if size > self.max_write_gb * 1e9:
                raise ValueError(
                    f"write: streaming {self.mode} at n={self.n} ({self.layout}) writes up to "
                    f"{size / 1e9:.1f} GB > max_write_gb={self.max_write_gb:g}; set write=false "
                    f"(checksums only) or raise max_write_gb"
                )
        if self.write and self.mode == "path_mats" and 8 * 9**self.n > self.max_write_gb * 1e9:
            raise ValueError(
                f"write: path matrices at n={self.n} are {8 * 9**self.n / 1e9:.1f} GB > "
                f"max_write_gb={self.max_write_gb:g}"
            )
        return self
