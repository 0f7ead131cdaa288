"""The storage contract every backend implements, and helpers for writing backends."""

from .connection_thread import Call as Call
from .connection_thread import ConnectionThreads as ConnectionThreads
from .contract import CANCELLED_ERROR as CANCELLED_ERROR
from .contract import EXECUTOR_RETENTION as EXECUTOR_RETENTION
from .contract import EXPIRED_ERROR as EXPIRED_ERROR
from .contract import EXPIRED_TOO_OFTEN_ERROR as EXPIRED_TOO_OFTEN_ERROR
from .contract import SLEEPING_TIMED_OUT_ERROR as SLEEPING_TIMED_OUT_ERROR
from .contract import STORAGE_API as STORAGE_API
from .contract import STORAGE_METHODS as STORAGE_METHODS
from .contract import Capabilities as Capabilities
from .contract import ChangeNotifications as ChangeNotifications
from .contract import DuplicateSleepingTaskUniqueIdError as DuplicateSleepingTaskUniqueIdError
from .contract import ExecutionRecord as ExecutionRecord
from .contract import ExecutorInfo as ExecutorInfo
from .contract import Lease as Lease
from .contract import Payload as Payload
from .contract import RunCommit as RunCommit
from .contract import SleepingWakeup as SleepingWakeup
from .contract import StatusChange as StatusChange
from .contract import Storage as Storage
from .contract import StorageError as StorageError
from .contract import TransactionalInserts as TransactionalInserts
from .contract import cascade_error as cascade_error
from .helpers import LockedStorage as LockedStorage
from .helpers import SingleOperationStorage as SingleOperationStorage
from .threaded_storage import ThreadedStorage as ThreadedStorage
