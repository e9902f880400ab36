"""The science of BrainScale: Nipype workflows and the numerics behind them."""
