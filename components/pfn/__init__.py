"""Prior-data fitted networks: priors over tasks, the bar distribution, the exact GP posterior
(the PFN's target on the GP prior), the training loop over sampled tasks and the weights file
(Müller et al., ICLR 2022; the network itself is :mod:`components.models.pfn`)."""
