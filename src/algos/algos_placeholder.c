int wq__algos_placeholder;
