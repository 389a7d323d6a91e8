"""Expert specialisation of the upcycled default model (Branch-Train-MiX on offline text).

`domains` names the eight expert domains, `corpora` builds their text from the
installed assets, `lora` holds the low-rank expert FFN used while training,
`steps` runs branch / mix / fine-tune and `analysis` measures routing.
"""
