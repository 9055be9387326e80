"""The only library code that imports streamlit: cached resources and shared widgets."""
