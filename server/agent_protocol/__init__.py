"""LangGraph's Agent Protocol (assistants, threads, runs) over hfchain's agent, as langgraph-sdk and
RemoteGraph speak it."""
