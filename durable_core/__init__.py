"""durable: a durable execution engine for Python on trio.

Tasks survive crashes, retries and restarts because every state change is stored in a pluggable
storage (SQLite by default). See the README and ``docs/``.
"""

from .errors import DurableExecutionCancelledError as DurableExecutionCancelledError
from .errors import DurableExecutionError as DurableExecutionError
from .errors import DurableExecutionNotFoundError as DurableExecutionNotFoundError
from .errors import DurableExecutionTimedOutError as DurableExecutionTimedOutError
from .errors import ErrorInfo as ErrorInfo
from .events import EventKind as EventKind
from .events import ExecutionRun as ExecutionRun
from .events import TaskExecutionEvent as TaskExecutionEvent
from .executor import DurableExecutor as DurableExecutor
from .handles import TaskExecutionHandle as TaskExecutionHandle
from .metrics import StorageOperationMetrics as StorageOperationMetrics
from .models import ExecutionRef as ExecutionRef
from .models import FinalizeInput as FinalizeInput
from .models import FinishedChildTaskExecution as FinishedChildTaskExecution
from .models import ParentRef as ParentRef
from .models import RetryOptions as RetryOptions
from .models import TaskExecution as TaskExecution
from .models import TaskRunContext as TaskRunContext
from .options import Option as Option
from .plugins import hookimpl as hookimpl
from .serialization import SerializationError as SerializationError
from .serialization import Serializer as Serializer
from .serialization import register_serializable as register_serializable
from .status import ACTIVE_TASK_EXECUTION_STATUSES as ACTIVE_TASK_EXECUTION_STATUSES
from .status import ALL_TASK_EXECUTION_STATUSES as ALL_TASK_EXECUTION_STATUSES
from .status import ERRORED_TASK_EXECUTION_STATUSES as ERRORED_TASK_EXECUTION_STATUSES
from .status import FINISHED_TASK_EXECUTION_STATUSES as FINISHED_TASK_EXECUTION_STATUSES
from .status import TaskExecutionStatus as TaskExecutionStatus
from .storage.contract import STORAGE_API as STORAGE_API
from .storage.contract import Capabilities as Capabilities
from .storage.contract import Storage as Storage
from .storage.opening import open_storage as open_storage
from .tasks import ChildTask as ChildTask
from .tasks import ParentTaskResult as ParentTaskResult
from .tasks import Task as Task
from .tasks import child_task as child_task

__all__ = [
    "ACTIVE_TASK_EXECUTION_STATUSES", "ALL_TASK_EXECUTION_STATUSES", "Capabilities", "ChildTask",
    "DurableExecutionCancelledError", "DurableExecutionError", "DurableExecutionNotFoundError",
    "DurableExecutionTimedOutError", "DurableExecutor", "ERRORED_TASK_EXECUTION_STATUSES",
    "ErrorInfo", "EventKind", "ExecutionRef", "ExecutionRun", "FINISHED_TASK_EXECUTION_STATUSES", "FinalizeInput",
    "FinishedChildTaskExecution", "Option", "ParentRef", "ParentTaskResult", "RetryOptions",
    "STORAGE_API", "SerializationError", "Serializer", "Storage", "StorageOperationMetrics",
    "Task", "TaskExecution", "TaskExecutionEvent", "TaskExecutionHandle", "TaskExecutionStatus",
    "TaskRunContext", "child_task", "hookimpl", "open_storage", "register_serializable",
]
