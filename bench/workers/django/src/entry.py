import django
from django.conf import settings

settings.configure(
    ALLOWED_HOSTS=["*"],
    DATABASES={},
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
    ROOT_URLCONF="urls",
    SECRET_KEY="bench-only",
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from workers import WorkerEntrypoint, wsgi  # noqa: E402

application = get_wsgi_application()


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return await wsgi.fetch(application, request, self.env)
