from django.http import HttpRequest, HttpResponse


def home(request: HttpRequest) -> HttpResponse:
    who = request.user.get_username() if request.user.is_authenticated else "nobody"
    return HttpResponse(
        f"delegation_idp example identity site. Signed in: {who}\n", content_type="text/plain"
    )
