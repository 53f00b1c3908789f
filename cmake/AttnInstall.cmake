# Placeholder: install rules come with the packaging work.
