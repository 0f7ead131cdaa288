-- What caused an error: the exception type's qualified name and its traceback (capped by the engine).
ALTER TABLE executions ADD COLUMN error_type_name TEXT;
ALTER TABLE executions ADD COLUMN error_traceback TEXT;
