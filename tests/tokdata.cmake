# Tokenizer (SentencePiece BPE) and dataset tests: real assets, serial, fast.
wq_test_exe(test_tok_sp SOURCES test_tok_sp.c)
wq_add_test(test_tok_sp LABELS unit)
wq_test_exe(test_dataset SOURCES test_dataset.c)
wq_add_test(test_dataset LABELS unit)
