"""Federated learning components: partitioners, merge strategies and update messages.

Pure functions only (numpy / torch / safetensors); the client actors and the server loop build on
them. Strategies: prototype averaging (Hendryx et al. 2021, Federated Reconnaissance), FedAvg
(McMahan et al. 2017) and FedProx (Li et al. 2020).
"""
