"""The spiking core the lab's SNN papers share (sei_bwsnn, opzo, hlop, grsnn).

Multi-step neurons over inputs shaped [T, batch, ...] whose membrane state lives only inside one
forward call (state carried between batches is the most common SNN bug), surrogate spike functions,
input encodings, and spike-rate statistics for energy estimates. The neuron convention is
SpikingJelly's (tests/components/snn/ keeps a parity test against its LIFNode).
"""

from components.snn.encoding import direct, rate
from components.snn.layers import MultiStep
from components.snn.neuron import IF, LIF
from components.snn.stats import record_spike_rates
from components.snn.surrogate import SURROGATES, spike

__all__ = ["IF", "LIF", "MultiStep", "SURROGATES", "direct", "rate", "record_spike_rates", "spike"]
