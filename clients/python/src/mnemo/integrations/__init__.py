"""Framework integrations (extras): ``mnemo.integrations.langchain`` (a LangChain
``VectorStore``) and ``mnemo.integrations.langgraph`` (a LangGraph ``BaseStore``)."""
