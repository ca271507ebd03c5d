int wq__model_placeholder;
