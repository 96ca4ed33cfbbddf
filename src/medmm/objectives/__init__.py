"""Pre-training losses as plain modules: named features in, named losses out.

`masking` (BERT-style code masking), `masked_code` (MedM-PLM Text-to-Code / Code-to-Code).
"""
