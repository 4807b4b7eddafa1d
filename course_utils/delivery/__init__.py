"""How the course reaches its readers: the chapter map, the set-up cell that makes a fresh Colab runtime work, and
the executed book (notebooks and static HTML) for reading and lecturing, and the cleaner that strips a notebook's
outputs before it is committed.

Nothing here teaches an LLM idea; it is the course's own tooling, the top layer of the package (it may import any
layer, nothing imports it).
"""
